"""Staff roles (RBAC): Django groups with permissions, role checks and maker-checker."""

"""Back-office pages, one module per screen (each view wrapped in ``staff_page``)."""

"""The sandbox PSP: a local payment service provider for the demo and the tests."""

"""The ground floor: settings, contracts and adapters. Imports nothing else of the project."""

"""Typed configuration: schema, ConfigStore registration, validation and composition."""

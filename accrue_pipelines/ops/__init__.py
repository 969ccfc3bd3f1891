"""The ops domain: tenant and fleet health for the on-call engineer, and its alerts."""

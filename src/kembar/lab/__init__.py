"""Test and demo labs: real processes and files arranged as a cluster on one host."""

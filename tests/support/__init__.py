"""The test-support package: helpers shared by test modules (conftests define fixtures only, and no test module
imports another; tests/test_suite_layout.py enforces both)."""

"""The house rules: import layers, one source for each rule, the CI workflows."""

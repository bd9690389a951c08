//! lock-torture (issue 6)

//! placeholder, replaced by the test kit work

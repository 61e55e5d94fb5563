//! skiff-controllers

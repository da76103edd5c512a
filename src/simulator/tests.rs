//! End-to-end tests over real HTTP on 127.0.0.1.

/work/main/fuzz/target/x86_64-unknown-linux-gnu/release/deps/pin_project_lite-17b5437e54b65f59.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/work/main/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libpin_project_lite-17b5437e54b65f59.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/work/main/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libpin_project_lite-17b5437e54b65f59.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs:

//! Compiles the dropsonde and Loggregator v2 `.proto` files in `proto/` with a pure-Rust parser,
//! so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: &[&str] = &[
        "proto/events/envelope.proto",
        "proto/events/metric.proto",
        "proto/events/log.proto",
        "proto/events/http.proto",
        "proto/events/error.proto",
        "proto/events/uuid.proto",
        "proto/view/envelope.proto",
        "proto/loggregator/v2/envelope.proto",
        "proto/loggregator/v2/egress.proto",
        "proto/prometheus/remote.proto",
    ];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    // The view's bytes fields become `Bytes`: slices of the frame, not copies.
    // v2 maps as B-trees: a dozen tags are cheaper to insert in order than
    // to hash, and come out sorted.
    prost_build::Config::new()
        .bytes([".view"])
        .btree_map([".loggregator.v2"])
        .compile_fds(descriptors)?;
    Ok(())
}

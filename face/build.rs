//! Compiles the C++ shim over Debian's dlib (`libdlib-dev`, installed by
//! `scripts/deps.sh need_face_models`) and links `libdlib`.

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    if !std::path::Path::new("/usr/include/dlib/dnn.h").exists() {
        panic!(
            "dlib's headers are missing (/usr/include/dlib): install Debian's libdlib-dev, \
             e.g. `. scripts/deps.sh && need_face_models`"
        );
    }
    cc::Build::new()
        .cpp(true)
        .std("c++14")
        .file("src/shim.cpp")
        // The network's inner loops are dlib templates compiled here: an
        // unoptimised debug build would take seconds per face.
        .opt_level(2)
        .debug(false)
        .flag_if_supported("-Wno-deprecated-copy")
        .flag_if_supported("-Wno-misleading-indentation")
        .compile("witness_face_shim");
    println!("cargo:rustc-link-lib=dylib=dlib");
    println!("cargo:rustc-link-lib=dylib=blas");
    println!("cargo:rustc-link-lib=dylib=lapack");
}

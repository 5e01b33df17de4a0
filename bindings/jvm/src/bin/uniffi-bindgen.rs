//! uniffi's binding generator, built from the same uniffi version as the library, so the Kotlin
//! it writes (`generate --library libconsul_rs_jvm.so --language kotlin`) matches the scaffolding.
fn main() {
    uniffi::uniffi_bindgen_main()
}

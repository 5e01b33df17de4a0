//! `consul-rs keygen` (`command/keygen`): prints a new gossip encryption key, 32 random bytes in
//! base64, ready for `encrypt` / `-encrypt` / `consul-rs keyring -install`.

use clap::Args;

/// `keygen` takes no flags.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {}

/// Runs `keygen`.
pub(crate) fn run(_: KeygenArgs) -> u8 {
    println!("{}", consul_core::gossip::keyring::generate_key());
    0
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    #[test]
    fn keys_are_32_random_bytes() {
        let a = consul_core::gossip::keyring::generate_key();
        let b = consul_core::gossip::keyring::generate_key();
        let raw = base64::engine::general_purpose::STANDARD.decode(&a).expect("base64");
        assert_eq!(raw.len(), 32);
        assert_ne!(a, b);
        assert!(crate::tests::parse("keygen").is_ok());
        assert!(crate::tests::parse("keygen extra").is_err());
    }
}

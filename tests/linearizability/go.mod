module consul-rs/tests/linearizability

// Kept low so a distribution's golang-go can build it without a toolchain download.
go 1.18

require github.com/anishathalye/porcupine v1.3.1

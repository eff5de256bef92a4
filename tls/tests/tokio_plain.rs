//! The tokio (epoll) driver on loopback, plain TCP: the scenarios of
//! `uring_plain.rs` and the drain and refusal paths, on the fallback that
//! runs where io_uring is blocked.

mod common;

use common::Driver::Tokio;

#[test]
fn bytes_go_through_both_ways_with_half_close() {
    common::echo_with_half_close(Tokio);
}

#[test]
fn connections_spread_over_endpoints_and_a_dead_one_is_skipped() {
    common::spread_skipping_a_refused_endpoint(Tokio);
}

#[test]
fn many_connections_run_side_by_side() {
    common::many_connections_at_once(Tokio);
}

#[test]
fn a_stop_drains_open_connections_then_closes_them() {
    common::drain_then_close(Tokio);
}

#[test]
fn a_client_is_reset_when_every_endpoint_refuses() {
    common::refused_everywhere_resets_the_client(Tokio);
}

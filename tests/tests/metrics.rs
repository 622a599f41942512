//! The Prometheus endpoint (issue 16 §4): a scrape during payments shows
//! the counters, gauges and histograms moving by exactly what was done.

use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};
use eapay_tests::metrics::http_get;
use eapay_tests::{
    details, eap_access_request, eap_identity_response, exchange, udp_socket, Method, Server, NO_REPLY_WAIT,
};

/// An approval, a decline 61, a reversal and a datagram with a wrong
/// secret: each moves its own series by one, and the latency histograms
/// count the two decisions and at least their commits.
#[test]
fn a_scrape_during_payments_shows_each_decision() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--limit", "5000"]);
    let before = server.scrape();

    let ok = details("metrics-ok", 1200);
    server.pay(&card, &ok).assert_approved(&server, &ok);
    let over = details("metrics-over", 10_000);
    server.pay(&card, &over).assert_declined(DeclineCode::ExceedsLimit, Some(&over.transaction_id));
    server.settle_demo(SettlementAction::Reverse, &ok.transaction_id).assert_done("reverse");
    let socket = udp_socket("127.0.0.1:0");
    let (_, forged) = eap_access_request(7, "someone", &eap_identity_response(0, "someone"), None, "not-the-secret");
    assert!(exchange(&socket, server.auth, &forged, NO_REPLY_WAIT).is_none(), "a wrong secret was answered");

    let after = server.scrape();
    let moved = |series: &str| after.count(series) - before.count(series);
    assert_eq!(moved("eapay_payment_approvals_total"), 1, "approvals");
    assert_eq!(moved(r#"eapay_payment_declines_total{code="61",name="Exceeds-Limit"}"#), 1, "declines 61");
    assert_eq!(moved(r#"eapay_payment_declines_total{code="51",name="Insufficient-Funds"}"#), 0, "declines 51");
    assert_eq!(moved(r#"eapay_settlements_total{action="reverse",result="done"}"#), 1, "reversals");
    assert_eq!(moved(r#"eapay_radius_dropped_total{reason="bad_authenticator"}"#), 1, "wrong secret");
    assert_eq!(moved(r#"eapay_eap_answers_total{answer="accept"}"#), 1, "Access-Accepts");
    assert!(moved(r#"eapay_eap_answers_total{answer="challenge"}"#) >= 4, "two AKA conversations challenge");
    assert_eq!(moved("eapay_decision_seconds_count"), 2, "two decisions timed");
    assert_eq!(
        after.count(r#"eapay_decision_seconds_bucket{le="+Inf"}"#),
        after.count("eapay_decision_seconds_count"),
        "the +Inf bucket holds every observation"
    );
    assert!(after.value("eapay_decision_seconds_sum") > before.value("eapay_decision_seconds_sum"));
    // Approval, decline and reversal are each durable before their answer
    // (and the SQN reservations commit too).
    assert!(moved("eapay_ledger_commit_seconds_count") >= 3, "ledger commits timed");
    assert!(moved("eapay_ledger_commits_total") >= 3);
    assert_eq!(after.count(r#"eapay_eap_conversations{front="radius"}"#), 0, "both conversations finished");
    assert_eq!(after.count(r#"eapay_build_info{version="0.1.0"}"#), 1);
    assert!(after.value("process_resident_memory_bytes") > 1e6, "resident memory is reported");
    for line in after.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap_or_default();
        let kind = line.split(' ').nth(3).unwrap_or_default();
        match kind {
            "counter" => assert!(name.ends_with("_total"), "counter {name} lacks _total"),
            "histogram" => assert!(name.ends_with("_seconds"), "histogram {name} is not in seconds"),
            "gauge" => assert!(!name.ends_with("_total"), "gauge {name} is named like a counter"),
            other => panic!("unexpected metric type {other} in {line}"),
        }
    }
}

/// Only `GET` (and `HEAD`) `/metrics` is served; a malformed request gets
/// 400, and the endpoint keeps answering.
#[test]
fn the_endpoint_answers_only_what_it_serves() {
    let server = Server::start_default();
    let addr = server.metrics.expect("metrics address");
    let status = |request: &str| http_get(addr, request).lines().next().unwrap_or_default().to_string();
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(status("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(status("garbage\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    let head = http_get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"), "HEAD has no body:\n{head}");
    // A head that never ends is cut off at its size cap, not buffered.
    let endless = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(20_000));
    assert_eq!(http_get(addr, &endless), "", "an oversized head is closed unanswered");
    assert!(server.scrape().count("eapay_payment_approvals_total") == 0);
}

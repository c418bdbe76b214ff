use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn preface() -> Vec<u8> {
    let mut p = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    p.extend(frame(4, 0, 0, &[]));
    p
}

#[test]
fn control_frames_are_those_without_a_request_or_a_body() {
    let head = |kind, flags, len| FrameHead { len, kind, flags };
    assert!(!head(0, 0, 10).is_control(), "DATA with a body");
    assert!(!head(0, 1, 0).is_control(), "an empty DATA that ends the stream");
    assert!(head(0, 0, 0).is_control(), "an empty DATA");
    assert!(!head(1, 4, 30).is_control(), "HEADERS");
    assert!(head(9, 0, 0).is_control(), "an empty CONTINUATION");
    assert!(!head(9, 4, 0).is_control(), "the last CONTINUATION");
    for kind in [2, 3, 4, 5, 6, 7, 8, 10, 0xff] {
        assert!(head(kind, 0, 8).is_control(), "type {kind}");
    }
}

#[test]
fn the_budget_allows_a_burst_then_its_rate_and_what_lb_sends_earns_more() {
    let second = 1_000_000_000;
    let mut b = Budget::new(10, 0);
    assert!((0..100).all(|_| b.spend(0)), "ten seconds' worth at once");
    assert!(!b.spend(0));
    // Spent into debt: a second at 10/s pays back 10 frames.
    let mut b = Budget::new(10, 0);
    (0..100).for_each(|_| assert!(b.spend(0)));
    assert!(
        b.spend(second / 10 + second / 10),
        "two tenths of a second give two frames back"
    );
    let mut b = Budget::new(1, 0);
    (0..10).for_each(|_| assert!(b.spend(0)));
    b.credit(CREDIT_BYTES * 3 - 1);
    assert!(
        b.spend(0) && b.spend(0) && !b.spend(0),
        "3 KiB sent earn 2 frames and a bit"
    );
    let mut b = Budget::new(5, 0);
    b.credit(1 << 30);
    assert!((0..50).all(|_| b.spend(0)) && !b.spend(0), "credit stops at the burst");
}

#[test]
fn requests_and_bodies_never_spend_the_budget_however_the_bytes_are_split() {
    let mut bytes = preface();
    for stream in (1..2000).step_by(2) {
        bytes.extend(frame(1, 4, stream, &[0x82, 0x86, 0x84]));
        bytes.extend(frame(0, 1, stream, b"hello"));
    }
    for split in [1, 7, 9, 10, 4096] {
        let mut inbound = Inbound::new(1);
        for piece in bytes.chunks(split) {
            assert!(inbound.feed(piece), "split {split}");
        }
        assert!(matches!(inbound.scan, Scan::Head(_, 0)), "ends between frames");
    }
}

#[test]
fn a_flood_of_pings_settings_or_window_updates_is_cut_off_past_the_burst() {
    for (kind, payload) in [(6u8, vec![0u8; 8]), (4, vec![]), (8, vec![0, 0, 0, 1]), (2, vec![0; 5])] {
        let mut inbound = Inbound::new(20);
        assert!(inbound.feed(&preface()), "the preface's SETTINGS is one frame");
        let ping = frame(kind, 0, 0, &payload);
        let sent = (0..1000).take_while(|_| inbound.feed(&ping)).count();
        // 200 in the burst, the preface's SETTINGS spent one, and a little refill.
        assert!((199..230).contains(&sent), "type {kind}: {sent} frames passed");
    }
}

#[test]
fn error_frames_lb_sends_are_counted_by_code_but_not_graceful_ones() {
    let before = |frame, code| {
        hostile::h2_counts()
            .into_iter()
            .find(|(f, c, _)| *f == frame && *c == code)
            .map_or(0, |(_, _, n)| n)
    };
    let (calm, refused) = (
        before("goaway", "enhance_your_calm"),
        before("rst_stream", "refused_stream"),
    );
    let mut out = Outbound::default();
    let mut bytes = frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    bytes.extend(frame(3, 0, 1, &7u32.to_be_bytes()));
    bytes.extend(frame(3, 0, 3, &8u32.to_be_bytes()));
    bytes.extend(frame(0, 0, 5, &[1; 100]));
    bytes.extend(frame(7, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0x0b, b'x', b'y']));
    bytes.extend(frame(7, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]));
    for piece in bytes.chunks(3) {
        out.feed(piece);
    }
    assert_eq!(before("goaway", "enhance_your_calm"), calm + 1);
    assert_eq!(before("rst_stream", "refused_stream"), refused + 1);
    assert!(before("goaway", "no_error") == 0 && before("rst_stream", "cancel") == 0);
}

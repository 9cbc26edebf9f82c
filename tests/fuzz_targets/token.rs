//! The `token` target: the one-line `yzt1-` enrolment token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use yizhan_protocol::{SiteId, Token};

use super::common::{Input, NOW_MS, install_panic_hook};

/// `token`: byte 0 picks the form: text as typed or pasted (even), or the postcard bytes of
/// a `Token`, which are put in `yzt1-` text here so that decoding reaches the token's body
/// (odd). The token is read as `join` reads it and its certificate checked; a token that
/// reads must survive a round trip through its text.
pub fn token(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let rest = input.bytes(usize::MAX);
    let text = if opts & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!(
            "{}{}",
            yizhan_protocol::membership::TOKEN_PREFIX,
            URL_SAFE_NO_PAD.encode(rest)
        )
    };
    let Ok(token) = Token::from_text(&text) else {
        return;
    };
    let line = token.to_text();
    assert!(!line.contains(char::is_whitespace));
    assert_eq!(Token::from_text(&line).as_ref(), Ok(&token));
    if let Ok(cert) = token.cert.check(None, NOW_MS) {
        assert_eq!(SiteId::for_root(token.cert.signer), cert.site);
    }
}

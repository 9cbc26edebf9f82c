//! The `statement` target: certificates, revocations and receipts signed by the root.

use yizhan_protocol::signed::Signed;
use yizhan_protocol::{Certificate, DeviceKey, Receipt, Revocation, SiteId};

use super::common::{Input, NOW_MS, install_panic_hook, keys, site};

/// `statement`: byte 0 picks the statement (`% 3`: certificate, revocation, receipt) and
/// the form (bit 2): a whole `Signed<T>` as stored, sent in a `Hello`, `Roster` or `Done`,
/// or in a token (0); or a body, which is signed here by the root so that the signature
/// holds and decoding the body is reached (1). The statement is opened and checked as the
/// node checks it. A statement that opens must be the canonical encoding of what it says.
pub fn statement(data: &[u8]) {
    install_panic_hook();
    let mut input = Input(data);
    let opts = input.u8();
    let rest = input.bytes(usize::MAX);
    match opts % 3 {
        0 => statement_kind::<Certificate>(opts, rest, |s| {
            let checked = s.check(Some(site()), NOW_MS);
            let joining = s.check(None, NOW_MS);
            if let Ok(c) = &checked {
                assert_eq!(SiteId::for_root(s.signer), c.site);
                assert!(joining.is_ok());
            }
            let _ = s.digest();
        }),
        1 => statement_kind::<Revocation>(opts, rest, |s| {
            if let Ok(r) = s.check(site()) {
                assert_eq!(r.site, site());
            }
        }),
        _ => statement_kind::<Receipt>(opts, rest, |s| {
            let _ = s.open();
        }),
    }
}

fn statement_kind<T>(opts: u8, rest: &[u8], check: impl Fn(&Signed<T>))
where
    T: yizhan_protocol::Statement + PartialEq + std::fmt::Debug,
{
    let signed = if opts & 4 == 0 {
        match Signed::<T>::from_bytes(rest) {
            Ok(s) => {
                assert_eq!(
                    Signed::<T>::from_bytes(&s.to_bytes()).ok().as_ref(),
                    Some(&s)
                );
                s
            }
            Err(_) => return,
        }
    } else {
        // A root-signed body: build the whole statement's bytes around it.
        let root = DeviceKey::from_seed(keys::ROOT);
        let mut domain_and_body = T::DOMAIN.to_vec();
        domain_and_body.extend_from_slice(rest);
        let signature = root.sign(&domain_and_body);
        let mut whole = Vec::new();
        whole.push(32);
        whole.extend_from_slice(root.device_id().as_bytes());
        // postcard's length of a byte string: an unsigned LEB128 varint.
        leb128::write::unsigned(&mut whole, rest.len() as u64).expect("writes to a Vec");
        whole.extend_from_slice(rest);
        whole.push(64);
        whole.extend_from_slice(&signature);
        match Signed::<T>::from_bytes(&whole) {
            Ok(s) => s,
            Err(_) => {
                assert!(
                    whole.len() > T::MAX_BODY + 256,
                    "a well-formed Signed<T> was refused"
                );
                return;
            }
        }
    };
    if let Ok(t) = signed.open() {
        // The body is the one canonical encoding of the statement: signing it again
        // yields the same bytes.
        let again = Signed::sign(&DeviceKey::from_seed(keys::ROOT), &t);
        assert_eq!(
            again.body, signed.body,
            "an opened statement is not canonical"
        );
        assert_eq!(again.open().ok().as_ref(), Some(&t));
    }
    check(&signed);
}

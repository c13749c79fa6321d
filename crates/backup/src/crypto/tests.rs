use super::gpg_test::GpgHome;
use super::*;
use std::io;

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 3000 < 1500 {
                b"abc\n"[i % 4]
            } else {
                (i * 7919 % 251) as u8
            }
        })
        .collect()
}

fn encrypt_vec(how: &Encryption, zlib: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt(how, zlib, data, &mut out).expect("encrypt");
    out
}

fn decrypt_vec(data: Vec<u8>, how: &Decryption) -> Result<Vec<u8>, String> {
    let mut r = decrypt(io::Cursor::new(data), how).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn passphrase_debug_is_secret() {
    let p = Passphrase::new("hunter2");
    assert_eq!(format!("{p:?}"), "<secret>");
    let e = Encryption::Passphrase(p);
    assert!(!format!("{e:?}").contains("hunter2"));
}

#[test]
fn round_trip_and_wrong_passphrase() {
    let data = sample(300_000);
    let enc = encrypt_vec(
        &Encryption::Passphrase(Passphrase::new("right")),
        false,
        &data,
    );
    let back = decrypt_vec(
        enc.clone(),
        &Decryption::Passphrase(Passphrase::new("right")),
    );
    assert_eq!(back.expect("decrypts"), data);
    let err = decrypt_vec(enc, &Decryption::Passphrase(Passphrase::new("wrong")))
        .expect_err("wrong passphrase");
    assert_eq!(
        err,
        "wrong passphrase, or the copy is not encrypted with this passphrase"
    );
}

#[test]
fn garbage_is_not_a_message() {
    let err = decrypt_vec(
        b"plain text, no OpenPGP".to_vec(),
        &Decryption::Passphrase(Passphrase::new("x")),
    )
    .expect_err("garbage");
    assert!(err.contains("not a valid OpenPGP message"), "{err}");
}

#[test]
fn tampered_ciphertext_fails_at_the_end() {
    let data = sample(200_000);
    let mut enc = encrypt_vec(&Encryption::Passphrase(Passphrase::new("p")), false, &data);
    let mid = enc.len() / 2;
    enc[mid] ^= 0x40;
    let err =
        decrypt_vec(enc, &Decryption::Passphrase(Passphrase::new("p"))).expect_err("tampered");
    assert!(err.contains("corrupted"), "{err}");
}

#[test]
fn gpg_decrypts_our_symmetric_streams() {
    let Some(gpg) = GpgHome::new() else { return };
    let data = sample(2_500_000);
    for zlib in [false, true] {
        let enc = encrypt_vec(
            &Encryption::Passphrase(Passphrase::new("s3cret pass")),
            zlib,
            &data,
        );
        let f = gpg.file("obj.gpg", &enc);
        let out = gpg.decrypt_with_passphrase(&f, "s3cret pass");
        assert!(out == data, "gpg output differs (zlib inside: {zlib})");
    }
}

#[test]
fn we_decrypt_gpg_symmetric_and_recognise_a_wrong_passphrase() {
    let Some(gpg) = GpgHome::new() else { return };
    let data = sample(1_000_000);
    let enc = gpg.encrypt_like_original(&data, "orig pass");
    let back = decrypt_vec(
        enc.clone(),
        &Decryption::Passphrase(Passphrase::new("orig pass")),
    )
    .expect("decrypt gpg -c");
    assert!(back == data);
    let err =
        decrypt_vec(enc, &Decryption::Passphrase(Passphrase::new("nope"))).expect_err("wrong");
    assert!(err.contains("wrong passphrase"), "{err}");
}

#[test]
fn recipients_from_gpg_keyring_and_keyring_file() {
    let Some(gpg) = GpgHome::new() else { return };
    gpg.generate_key("Backup Operator <ops@example.org>");
    let data = sample(1_500_000);
    // Via `gpg --export <recipient>` in that home.
    let keys = load_recipients_with_gnupg_home(&["ops@example.org".into()], None, Some(gpg.path()))
        .expect("recipient from gpg");
    let enc = encrypt_vec(&Encryption::Recipients(keys.clone()), false, &data);
    let f = gpg.file("r.gpg", &enc);
    let out = gpg.ok(&["--decrypt", f.to_str().expect("utf8")], b"");
    assert!(out == data, "gpg could not decrypt the recipient stream");
    // Via an armored keyring file, by fingerprint.
    let fpr = keys.summary()[0].1.clone();
    let armored = gpg.ok(&["--armor", "--export", &fpr], b"");
    let ring = gpg.file("ring.asc", &armored);
    let by_fpr = load_recipients(&[format!("0x{fpr}")], Some(&ring)).expect("by fingerprint");
    assert_eq!(by_fpr.summary()[0].1, fpr);
    let missing = load_recipients(&["nobody@example.org".into()], Some(&ring))
        .expect_err("unknown recipient");
    assert!(
        missing.to_string().contains("nobody@example.org"),
        "{missing}"
    );
    // Decrypt with the exported secret key (binary), and through gpg itself.
    let secret = gpg.ok(&["--export-secret-keys", &fpr], b"");
    let sec_path = gpg.file("sec.gpg", &secret);
    let keys = load_secret_keys(&sec_path).expect("secret keys");
    let back = decrypt_vec(
        enc.clone(),
        &Decryption::SecretKeys {
            keys,
            passphrase: None,
        },
    )
    .expect("decrypt with secret key");
    assert!(back == data);
    let via_gpg = decrypt_vec(
        enc,
        &Decryption::Gpg {
            gnupg_home: Some(gpg.path().to_path_buf()),
        },
    )
    .expect("decrypt via gpg");
    assert!(via_gpg == data);
    // gpg's own recipient encryption, read back with the secret key file.
    let plain = gpg.file("p", &data);
    let theirs = gpg.ok(
        &[
            "--trust-model",
            "always",
            "-e",
            "-r",
            "ops@example.org",
            "-o",
            "-",
            plain.to_str().expect("utf8"),
        ],
        b"",
    );
    let back = decrypt_vec(
        theirs,
        &Decryption::SecretKeys {
            keys: load_secret_keys(&sec_path).expect("keys"),
            passphrase: None,
        },
    )
    .expect("decrypt gpg -e");
    assert!(back == data);
}

#[test]
fn gpg_decryption_failure_is_an_error_at_end_of_stream() {
    let Some(gpg) = GpgHome::new() else { return };
    let enc = encrypt_vec(
        &Encryption::Passphrase(Passphrase::new("x")),
        false,
        b"data",
    );
    // No passphrase available to gpg in batch mode: it must fail, loudly.
    let err = decrypt_vec(
        enc,
        &Decryption::Gpg {
            gnupg_home: Some(gpg.path().to_path_buf()),
        },
    )
    .expect_err("gpg cannot decrypt");
    assert!(err.contains("gpg --decrypt failed"), "{err}");
}

//! The keystore: permissions, passphrases, listing without bytes, data key
//! replacement at the nonce limit, and master key rotation that survives a
//! crash at every step.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use symbiont_crypto::{
    KeyId, Keystore, KeystoreError, LockedBuf, OpenError, Opener, RotateStep, SealContext, Sealer,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("symbiont-ks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh keystore directory (created by `init`, mode 0700) under a
/// scratch directory that the test removes.
fn keystore_dir(name: &str) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    (root.join("keys"), root)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn seal_one(ks: Arc<Keystore>, dataset: &str, msg: &[u8]) -> Vec<u8> {
    let sealer = Sealer::new(SealContext::new(dataset, &["f"]), ks);
    sealer
        .seal(1, &[1], msg.len(), |b| b.extend_from_slice(msg))
        .unwrap()
}

fn open_one(ks: &Keystore, dataset: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let opener = Opener::new(
        SealContext::new(dataset, &["f"]),
        ks.data_keys(dataset).unwrap(),
    );
    let mut buf = LockedBuf::new();
    opener.open(sealed, &mut buf)?;
    Ok(buf.as_slice().to_vec())
}

#[test]
fn init_makes_private_files_and_refuses_open_directories() {
    let root = scratch("init");
    let dir = root.join("keys");
    let report = Keystore::init(&dir, None).unwrap();
    assert!(report.audit_key_created && !report.sealed);
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && p.extension().is_some_and(|e| e != "pub") {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert!(dir.join("tfhe").is_dir());
    assert!(matches!(
        Keystore::init(&dir, None),
        Err(KeystoreError::AlreadyInitialised(_))
    ));

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Keystore::open(&dir, None).unwrap_err();
    assert!(
        matches!(err, KeystoreError::Exposed { mode: 0o755, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"));
    let other = root.join("open");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o750)).unwrap();
    assert!(matches!(
        Keystore::init(&other, None),
        Err(KeystoreError::Exposed { .. })
    ));
    assert!(matches!(
        Keystore::open(&root.join("none"), None),
        Err(KeystoreError::Missing(_))
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn passphrase_sealed_master_key() {
    let (dir, root) = keystore_dir("pass");
    Keystore::init(&dir, Some(b"correct horse")).unwrap();
    assert!(matches!(
        Keystore::open(&dir, None),
        Err(KeystoreError::PassphraseNeeded(_))
    ));
    let err = Keystore::open(&dir, Some(b"battery staple")).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err}");
    assert!(!err.to_string().contains("battery"));
    let ks = Arc::new(Keystore::open(&dir, Some(b"correct horse")).unwrap());
    let sealed = seal_one(Arc::clone(&ks), "d", b"hello");
    assert_eq!(open_one(&ks, "d", &sealed).unwrap(), b"hello");
    assert_eq!(Keystore::list(&dir).unwrap().master_protection, "argon2id");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 21, point 9: the master-key file's Argon2id parameters are read
/// before anything authenticates them. A planted file asking for 4 TiB of
/// memory or 2^32 passes is refused at once, naming the file, instead of
/// making the open exhaust memory or run for hours.
#[test]
fn argon2_parameters_past_the_bounds_are_refused() {
    let (dir, root) = keystore_dir("argon2-bounds");
    Keystore::init(&dir, Some(b"correct horse")).unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("master-")
        })
        .unwrap();
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for (name, value) in [
        ("m_kib", u64::from(u32::MAX)),
        ("t", u64::from(u32::MAX)),
        ("p", 1 << 20),
    ] {
        let mut planted = original.clone();
        planted["argon2id"][name] = value.into();
        std::fs::write(&file, serde_json::to_vec(&planted).unwrap()).unwrap();
        let err = Keystore::open(&dir, Some(b"correct horse")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("beyond what this build accepts"),
            "{name}: {text}"
        );
        assert!(text.contains("master-"), "{text}");
    }
    std::fs::write(&file, serde_json::to_vec(&original).unwrap()).unwrap();
    assert!(Keystore::open(&dir, Some(b"correct horse")).is_ok());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn listing_shows_ids_and_times_never_bytes() {
    let (dir, root) = keystore_dir("list");
    Keystore::init(&dir, None).unwrap();
    let ks = Arc::new(Keystore::open(&dir, None).unwrap());
    seal_one(Arc::clone(&ks), "patients", b"x");
    let listing = Keystore::list(&dir).unwrap();
    assert_eq!(listing.data_keys.len(), 1);
    assert_eq!(listing.data_keys[0].dataset, "patients");
    assert!(
        listing
            .audit_key
            .as_deref()
            .unwrap()
            .starts_with("symbiont-audit+")
    );
    let shown = format!("{listing:?} {}", serde_json::to_string(&listing).unwrap());
    let id = KeyId::parse(&listing.data_keys[0].id).unwrap();
    let key = ks.export_data_key(id).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&hex));
    let master: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("master-{}.key", listing.master_id))).unwrap(),
    )
    .unwrap();
    assert!(!shown.contains(master["key"].as_str().unwrap()));
    assert!(!format!("{ks:?}").contains(master["key"].as_str().unwrap()));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn data_key_is_replaced_before_its_limit() {
    let (dir, root) = keystore_dir("limit");
    Keystore::init(&dir, None).unwrap();
    let ks = Arc::new(Keystore::open(&dir, None).unwrap().with_limits(10, 4));
    let sealer = Sealer::new(SealContext::new("d", &["f"]), Arc::clone(&ks) as _);
    let mut batches = Vec::new();
    for i in 0..25u64 {
        let msg = i.to_le_bytes();
        batches.push(
            sealer
                .seal(1, &[i], 8, |b| b.extend_from_slice(&msg))
                .unwrap(),
        );
    }
    let listing = Keystore::list(&dir).unwrap();
    // 25 nonces in chunks of 4, at most 8 per key (the next chunk would
    // pass 10): four keys, three retired.
    assert_eq!(listing.data_keys.len(), 4);
    assert!(listing.data_keys.iter().all(|k| k.nonces_reserved <= 10));
    assert_eq!(listing.data_keys.iter().filter(|k| k.retired).count(), 3);
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(open_one(&ks, "d", b).unwrap(), (i as u64).to_le_bytes());
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn rotation_rewraps_without_reencrypting() {
    let (dir, root) = keystore_dir("rotate");
    Keystore::init(&dir, None).unwrap();
    let ks = Arc::new(Keystore::open(&dir, None).unwrap());
    let sealed = seal_one(Arc::clone(&ks), "d", b"kept");
    let before = Keystore::list(&dir).unwrap();
    drop(ks);
    let new_id = Keystore::rotate(&dir, None, Some(b"now sealed")).unwrap();
    let after = Keystore::list(&dir).unwrap();
    assert_ne!(before.master_id, after.master_id);
    assert_eq!(after.master_id, new_id);
    assert_eq!(before.data_keys[0].id, after.data_keys[0].id);
    assert!(
        !dir.join(format!("master-{}.key", before.master_id))
            .exists()
    );
    let ks = Keystore::open(&dir, Some(b"now sealed")).unwrap();
    assert_eq!(open_one(&ks, "d", &sealed).unwrap(), b"kept");
    std::fs::remove_dir_all(&root).unwrap();
}

const CRASH_DIR: &str = "SYMBIONT_TEST_CRASH_DIR";
const CRASH_STEP: &str = "SYMBIONT_TEST_CRASH_STEP";

/// Runs only as the child of `rotation_survives_a_crash_at_every_step`:
/// rotates and aborts the process (no destructors, no flushing) after the
/// step it is told.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(step)) = (std::env::var(CRASH_DIR), std::env::var(CRASH_STEP)) else {
        return;
    };
    let _ = Keystore::rotate_with(Path::new(&dir), None, None, |s| {
        if format!("{s:?}") == step {
            std::process::abort();
        }
    });
    unreachable!("the rotation reached {step} and aborted");
}

#[test]
fn rotation_survives_a_crash_at_every_step() {
    for (step, committed) in [
        (RotateStep::NewMasterWritten, false),
        (RotateStep::KeyringStaged, false),
        (RotateStep::Committed, true),
        (RotateStep::OldMasterDeleted, true),
    ] {
        let (dir, root) = keystore_dir(&format!("crash-{step:?}"));
        Keystore::init(&dir, None).unwrap();
        let ks = Arc::new(Keystore::open(&dir, None).unwrap());
        let sealed = seal_one(Arc::clone(&ks), "d", b"survives");
        drop(ks);
        let old = Keystore::list(&dir).unwrap().master_id;

        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--test-threads", "1"])
            .env(CRASH_DIR, &dir)
            .env(CRASH_STEP, format!("{step:?}"))
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(6),
            "{step:?}: the child must have aborted at the step ({status})"
        );

        // Reopening sees exactly the old or the new state, never a mix.
        let ks = Keystore::open(&dir, None).unwrap();
        let masters: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.starts_with("master-").then_some(n)
            })
            .collect();
        assert_eq!(masters.len(), 1, "{step:?}: {masters:?}");
        let now = Keystore::list(&dir).unwrap().master_id;
        assert_eq!(now != old, committed, "{step:?}");
        assert_eq!(
            open_one(&ks, "d", &sealed).unwrap(),
            b"survives",
            "{step:?}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

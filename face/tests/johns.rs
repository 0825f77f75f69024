//! False accepts and false rejects of the face model on real faces: the
//! "johns" set Debian ships with dlib (5 people, 11 photos each; see
//! `scripts/deps.sh need_face_test_set`). Every pair of photos is compared:
//! 275 pairs of one person, 1,210 of two. Prints the rates at several
//! thresholds (BENCHMARKS.md records them) and checks the default's.
//!
//! Needs WITNESS_FACE_MODELS and WITNESS_TEST_FACES (scripts/test.sh sets both).

use std::path::PathBuf;

use witness_face::{decode, distance, judge_liveness, Face, FaceModel, DEFAULT_THRESHOLD};

fn model() -> FaceModel {
    let dir = std::env::var("WITNESS_FACE_MODELS")
        .expect("WITNESS_FACE_MODELS is not set: run the tests with scripts/test.sh, which installs the models");
    FaceModel::load(&PathBuf::from(dir)).unwrap()
}

/// (person, file, the one face found) for every photo of the set.
fn johns(model: &FaceModel) -> Vec<(String, String, Vec<Face>)> {
    let root = PathBuf::from(
        std::env::var("WITNESS_TEST_FACES")
            .expect("WITNESS_TEST_FACES is not set: run the tests with scripts/test.sh, which finds the set"),
    );
    let mut people: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    people.sort();
    let mut out = Vec::new();
    for person in people {
        let mut files: Vec<_> = std::fs::read_dir(&person).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let img = decode(&std::fs::read(&file).unwrap()).unwrap();
            let faces = model.faces(&img).unwrap();
            let name = person.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, file.file_name().unwrap().to_string_lossy().into_owned(), faces));
        }
    }
    out
}

#[test]
fn false_accepts_and_rejects_on_the_johns() {
    let model = model();
    let photos = johns(&model);
    assert_eq!(photos.len(), 55, "the set has 5 people × 11 photos");
    let found: Vec<_> = photos.iter().filter(|(_, _, f)| f.len() == 1).collect();
    let missed: Vec<_> = photos.iter().filter(|(_, _, f)| f.len() != 1).map(|(p, f, _)| format!("{p}/{f}")).collect();
    println!("one face found in {} of {} photos; not in: {missed:?}", found.len(), photos.len());
    assert!(found.len() >= 50, "the detector found one face in only {} photos", found.len());

    for person in ["John_Salley", "John_Savage", "John_Schneider", "John_Shimkus", "John_Simm"] {
        let yaws: Vec<f32> = found.iter().filter(|(p, _, _)| p == person).map(|(_, _, f)| f[0].yaw()).collect();
        let (min, max) = yaws.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &y| (lo.min(y), hi.max(y)));
        println!("{person}: yaw {min:.3} … {max:.3}");
    }
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (i, a) in found.iter().enumerate() {
        for b in &found[i + 1..] {
            let d = distance(&a.2[0], &b.2[0]);
            if a.0 == b.0 {
                genuine.push(d)
            } else {
                impostor.push(d)
            }
        }
    }
    let rates = |t: f32| {
        let frr = genuine.iter().filter(|&&d| d >= t).count() as f64 / genuine.len() as f64;
        let far = impostor.iter().filter(|&&d| d < t).count() as f64 / impostor.len() as f64;
        (far, frr)
    };
    println!("{} pairs of one person, {} of two", genuine.len(), impostor.len());
    println!("threshold | false accepts | false rejects");
    for t in [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8] {
        let (far, frr) = rates(t);
        println!("{t:.2} | {:.2} % | {:.2} %", far * 100.0, frr * 100.0);
    }
    let (far, frr) = rates(DEFAULT_THRESHOLD);
    assert!(far < 0.01, "false accept rate {far} at the default threshold");
    assert!(frr < 0.05, "false reject rate {frr} at the default threshold");
    // A threshold of 0 accepts nobody, 2 (past any distance) everybody.
    assert_eq!(rates(0.0), (0.0, 1.0));
    assert_eq!(rates(2.0), (1.0, 0.0));
}

#[test]
fn a_photo_held_still_is_not_alive_but_a_turning_head_is() {
    let model = model();
    let photos = johns(&model);
    let person = "John_Simm";
    let mut faces: Vec<Face> =
        photos.iter().filter(|(p, _, f)| p == person && f.len() == 1).map(|(_, _, f)| f[0].clone()).collect();
    faces.sort_by(|a, b| a.yaw().total_cmp(&b.yaw()));
    let yaws: Vec<f32> = faces.iter().map(Face::yaw).collect();
    println!("{person}'s photos, yaw: {yaws:?}");

    // The same photo, frame after frame: one person, but no turn.
    let still: Vec<Vec<Face>> = (0..6).map(|_| vec![faces[faces.len() / 2].clone()]).collect();
    let judged = judge_liveness(&still, DEFAULT_THRESHOLD);
    assert!(!judged.passed && judged.same_person, "{judged:?}");
    assert_eq!(judged.reason, "the head did not turn to both sides");

    // Photos of one man turned from one side to the other: a turn.
    let turning: Vec<Vec<Face>> = faces.iter().map(|f| vec![f.clone()]).collect();
    let judged = judge_liveness(&turning, DEFAULT_THRESHOLD);
    assert!(judged.passed, "{judged:?}");

    // The same turn, but someone else's face in the middle of it.
    let other = photos.iter().find(|(p, _, f)| p != person && f.len() == 1).unwrap().2.clone();
    let mut swapped = turning.clone();
    swapped.insert(2, other);
    let judged = judge_liveness(&swapped, DEFAULT_THRESHOLD);
    assert!(!judged.passed && !judged.same_person, "{judged:?}");

    // Two faces in a frame, or too few frames with a face.
    let mut two = turning.clone();
    two[1].push(faces[0].clone());
    assert_eq!(judge_liveness(&two, DEFAULT_THRESHOLD).reason, "more than one face in the picture");
    let empty: Vec<Vec<Face>> = vec![vec![], vec![], turning[0].clone()];
    assert!(judge_liveness(&empty, DEFAULT_THRESHOLD).reason.starts_with("a face was found in 1 of 3 frames"));
}

#[test]
fn refuses_what_is_not_an_image() {
    assert!(decode(b"GIF89a....").is_err());
    assert!(decode(b"not an image at all").is_err());
    let missing = FaceModel::load(std::path::Path::new("/nonexistent")).unwrap_err();
    assert!(missing.to_string().contains("need_face_models"), "{missing}");
}

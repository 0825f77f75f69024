//! Face verification's cost: one frame of a call (640×480 JPEG, a face in
//! it) through the detector, the landmarks and the ResNet, and a whole
//! verification (the ID photo and 12 frames, as the workbench sends them).
//! The baseline, timed in the same run on the same frames, is decoding the
//! JPEGs alone. Frames are the johns photos (Debian's dlib examples) put on
//! a 640×480 canvas, as the browser test's camera shows them.
//!
//!   WITNESS_FACE_MODELS=… WITNESS_TEST_FACES=… cargo bench --bench face
//!   (scripts/bench.sh sets both)

use std::path::PathBuf;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("face bench: run with `cargo bench --bench face`");
        return;
    }
    let models = PathBuf::from(std::env::var("WITNESS_FACE_MODELS").expect("WITNESS_FACE_MODELS"));
    let faces = PathBuf::from(std::env::var("WITNESS_TEST_FACES").expect("WITNESS_TEST_FACES"));
    let loading = Instant::now();
    let model = witness_face::FaceModel::load(&models).unwrap();
    println!("models loaded in {:.0} ms ({})", loading.elapsed().as_secs_f64() * 1e3, model.version());

    // Every photo, centred on a 640×480 grey canvas and scaled ×3, as JPEG.
    let mut frames = Vec::new();
    let mut people: Vec<_> = std::fs::read_dir(&faces).unwrap().map(|e| e.unwrap().path()).collect();
    people.sort();
    for person in people {
        let mut files: Vec<_> = std::fs::read_dir(person).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let photo = image::open(&file).unwrap().to_rgb8();
            let photo = image::imageops::resize(&photo, 450, 450, image::imageops::FilterType::Triangle);
            let mut canvas = image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
            image::imageops::overlay(&mut canvas, &photo, 95, 15);
            let mut jpeg = std::io::Cursor::new(Vec::new());
            canvas.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
            frames.push(jpeg.into_inner());
        }
    }

    let (mut decode, mut analyse) = (Vec::new(), Vec::new());
    let mut found = 0;
    for _ in 0..RUNS {
        for frame in &frames {
            let t = Instant::now();
            let img = witness_face::decode(frame).unwrap();
            decode.push(t.elapsed());
            let t = Instant::now();
            found += usize::from(model.faces(&img).unwrap().len() == 1);
            analyse.push(t.elapsed() + decode[decode.len() - 1]);
        }
    }
    let (decode, analyse) = (median(decode), median(analyse));
    println!(
        "{} frames × {RUNS} runs, one face found in {found}: decode only (baseline) median {:.1} ms; \
         decode + detect + landmarks + descriptor median {:.1} ms ({:.0}× the baseline)",
        frames.len(),
        decode.as_secs_f64() * 1e3,
        analyse.as_secs_f64() * 1e3,
        analyse.as_secs_f64() / decode.as_secs_f64()
    );
    // A verification: the ID photo and 12 frames, one after another (the
    // server analyses one image at a time).
    let verification: Vec<Duration> = (0..RUNS)
        .map(|run| {
            let t = Instant::now();
            for frame in frames.iter().cycle().skip(run * 13).take(13) {
                model.faces(&witness_face::decode(frame).unwrap()).unwrap();
            }
            t.elapsed()
        })
        .collect();
    println!("one verification (13 images): median {:.2} s", median(verification).as_secs_f64());
}

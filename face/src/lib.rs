//! Face verification for Witness: is the customer on the call the person on
//! the ID photo, and is it a live person rather than a photo held up?
//!
//! The model is dlib's face-recognition ResNet
//! (`dlib_face_recognition_resnet_model_v1.dat`, 128-float descriptors,
//! 99.38 % on LFW by its authors' measure), as PyPI's
//! `face_recognition_models` 0.3.0 ships it, run by Debian's dlib 19.24
//! with its HOG face detector and 68-point landmark model
//! (`libdlib-data`). Everything loads from files installed by
//! `scripts/deps.sh need_face_models`; nothing is fetched at run time.
//!
//! Two faces are the same person when the Euclidean distance between their
//! descriptors is below a threshold ([`DEFAULT_THRESHOLD`], dlib's own 0.6;
//! the false accept and false reject rates measured on the faces Debian
//! ships with dlib are in `BENCHMARKS.md`). Liveness ([`judge_liveness`]) is
//! a prompted head turn judged across frames: the same face in every frame,
//! turned to both sides.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use serde::Serialize;

mod ffi;

/// The model, as events record it.
pub const MODEL_NAME: &str = "dlib_face_recognition_resnet_model_v1";
/// The descriptor file, as `need_face_models` names it.
pub const RECOGNITION_FILE: &str = "dlib_face_recognition_resnet_model_v1.dat";
/// The landmark file (Debian's libdlib-data, linked beside it).
pub const LANDMARKS_FILE: &str = "shape_predictor_68_face_landmarks.dat";
/// Descriptor distance below which two faces are taken for one person.
pub const DEFAULT_THRESHOLD: f32 = 0.6;
/// Faces looked at in one image at most.
const MAX_FACES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("face models not found: {0} (install them with `. scripts/deps.sh && need_face_models`)")]
    ModelsMissing(PathBuf),
    #[error("cannot load the face models: {0}")]
    Load(String),
    #[error("not a JPEG or PNG image: {0}")]
    Image(String),
    #[error("image too large: {0}×{1} pixels (at most {MAX_PIXELS})")]
    TooLarge(u32, u32),
    #[error("face analysis failed: {0}")]
    Analysis(String),
}

/// Images larger than this are refused (a 4K frame is 8.3 M pixels).
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// One face found in an image.
#[derive(Clone)]
pub struct Face {
    pub descriptor: [f32; 128],
    /// dlib's 68 landmarks (iBUG 300-W order), in image pixels.
    pub landmarks: [(f32, f32); 68],
    /// Left, top, right, bottom.
    pub bbox: [i64; 4],
}

impl fmt::Debug for Face {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Face").field("bbox", &self.bbox).field("yaw", &self.yaw()).finish_non_exhaustive()
    }
}

impl Face {
    /// Where the nose tip sits between the two sides of the jaw, from -0.5
    /// (at the image's left edge of the face) through 0 (facing the camera)
    /// to 0.5: a head turned to one side moves the nose towards that side.
    pub fn yaw(&self) -> f32 {
        let left = self.landmarks[0].0;
        let right = self.landmarks[16].0;
        let nose = self.landmarks[30].0;
        let width = right - left;
        if width <= f32::EPSILON {
            return 0.0;
        }
        (nose - left) / width - 0.5
    }

    /// The mean eye aspect ratio (Soukupová and Čech, 2016): about 0.3 for
    /// an open eye, under 0.2 when closed.
    pub fn eye_openness(&self) -> f32 {
        let p = &self.landmarks;
        let d = |a: usize, b: usize| ((p[a].0 - p[b].0).powi(2) + (p[a].1 - p[b].1).powi(2)).sqrt();
        let ear = |o: usize| {
            let w = d(o, o + 3);
            if w <= f32::EPSILON {
                0.0
            } else {
                (d(o + 1, o + 5) + d(o + 2, o + 4)) / (2.0 * w)
            }
        };
        (ear(36) + ear(42)) / 2.0
    }

    pub fn area(&self) -> i64 {
        (self.bbox[2] - self.bbox[0]).max(0) * (self.bbox[3] - self.bbox[1]).max(0)
    }
}

/// Euclidean distance between two descriptors.
pub fn distance(a: &Face, b: &Face) -> f32 {
    a.descriptor.iter().zip(&b.descriptor).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

/// Decodes a JPEG or PNG (what browsers' canvases and phone cameras give).
pub fn decode(bytes: &[u8]) -> Result<RgbImage, FaceError> {
    let format = image::guess_format(bytes).map_err(|e| FaceError::Image(e.to_string()))?;
    if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(FaceError::Image(format!("{format:?}")));
    }
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = reader.into_dimensions().map_err(|e| FaceError::Image(e.to_string()))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(FaceError::TooLarge(w, h));
    }
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| FaceError::Image(e.to_string()))?;
    Ok(img.to_rgb8())
}

/// The loaded models. dlib's network keeps per-call state, so one image is
/// analysed at a time; callers on an async runtime should use a blocking
/// thread (an image takes a few hundred milliseconds).
pub struct FaceModel {
    inner: Mutex<ffi::Model>,
    version: String,
}

impl fmt::Debug for FaceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaceModel").field("version", &self.version).finish()
    }
}

impl FaceModel {
    /// Loads the models from `dir` (see [`RECOGNITION_FILE`], [`LANDMARKS_FILE`]).
    pub fn load(dir: &Path) -> Result<Self, FaceError> {
        let recognition = dir.join(RECOGNITION_FILE);
        let landmarks = dir.join(LANDMARKS_FILE);
        for file in [&recognition, &landmarks] {
            if !file.is_file() {
                return Err(FaceError::ModelsMissing(file.clone()));
            }
        }
        let digest = sha256_file(&recognition).map_err(|e| FaceError::Load(e.to_string()))?;
        let model = ffi::Model::open(&landmarks, &recognition).map_err(FaceError::Load)?;
        Ok(Self { inner: Mutex::new(model), version: format!("dlib 19.24; sha256:{}", &digest[..16]) })
    }

    /// What events record as the model's version: the dlib it runs on and
    /// the model file's fingerprint.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every face found (up to 8), largest first.
    pub fn faces(&self, img: &RgbImage) -> Result<Vec<Face>, FaceError> {
        let model = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        model.faces(img, MAX_FACES).map_err(FaceError::Analysis)
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// How far the head must turn each way, in [`Face::yaw`] units, for a
/// head turn to count.
pub const TURN: f32 = 0.08;

/// What [`judge_liveness`] saw across the frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Liveness {
    pub passed: bool,
    /// Frames with exactly one face.
    pub frames_with_face: usize,
    pub frames: usize,
    /// Every face within the threshold of the first: one person throughout.
    pub same_person: bool,
    pub yaw_min: f32,
    pub yaw_max: f32,
    /// Why it failed, in words for the agent; empty when it passed.
    pub reason: String,
}

/// Judges a prompted head turn ("turn your head slowly to one side, then
/// the other") from frames of the live video: at least three frames with
/// exactly one face, one person throughout, and the head turned past
/// [`TURN`] to both sides. A photo held up to the camera does not turn.
pub fn judge_liveness(frames: &[Vec<Face>], threshold: f32) -> Liveness {
    let single: Vec<&Face> = frames.iter().filter(|f| f.len() == 1).map(|f| &f[0]).collect();
    let yaws: Vec<f32> = single.iter().map(|f| f.yaw()).collect();
    let yaw_min = yaws.iter().copied().fold(f32::INFINITY, f32::min);
    let yaw_max = yaws.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let same_person = single.iter().all(|f| distance(f, single[0]) < threshold);
    let reason = if frames.iter().any(|f| f.len() > 1) {
        "more than one face in the picture".to_string()
    } else if single.len() < 3 {
        format!("a face was found in {} of {} frames (3 needed)", single.len(), frames.len())
    } else if !same_person {
        "the face changed between frames".to_string()
    } else if yaw_min > -TURN || yaw_max < TURN {
        "the head did not turn to both sides".to_string()
    } else {
        String::new()
    };
    Liveness {
        passed: reason.is_empty(),
        frames_with_face: single.len(),
        frames: frames.len(),
        same_person,
        yaw_min: if single.is_empty() { 0.0 } else { yaw_min },
        yaw_max: if single.is_empty() { 0.0 } else { yaw_max },
        reason,
    }
}

/// Which frame to compare with the ID photo: of those with exactly one
/// face, the one facing the camera most squarely.
pub fn most_frontal(frames: &[Vec<Face>]) -> Option<usize> {
    (0..frames.len())
        .filter(|&i| frames[i].len() == 1)
        .min_by(|&a, &b| frames[a][0].yaw().abs().total_cmp(&frames[b][0].yaw().abs()))
}

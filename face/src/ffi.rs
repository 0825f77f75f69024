//! The C ABI of `shim.cpp`. The only unsafe code in Witness.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, CString};
use std::path::Path;

use image::RgbImage;

use crate::Face;

#[repr(C)]
struct RawModel {
    _private: [u8; 0],
}

extern "C" {
    fn wf_open(landmarks: *const c_char, net: *const c_char, err: *mut c_char, err_len: usize) -> *mut RawModel;
    fn wf_close(model: *mut RawModel);
    #[allow(clippy::too_many_arguments)]
    fn wf_faces(
        model: *mut RawModel,
        rgb: *const u8,
        w: c_long,
        h: c_long,
        max: c_int,
        descriptors: *mut f32,
        marks: *mut f32,
        boxes: *mut c_long,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Owns a loaded dlib model; not shared between threads without a lock.
pub(crate) struct Model(*mut RawModel);

// SAFETY: a `Model` is only reachable through `FaceModel`'s Mutex, so one
// thread uses it at a time; dlib's objects have no thread affinity.
unsafe impl Send for Model {}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("bad path {}", path.display()))
}

fn message(err: &[u8]) -> String {
    let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    String::from_utf8_lossy(&err[..end]).into_owned()
}

impl Model {
    pub(crate) fn open(landmarks: &Path, net: &Path) -> Result<Self, String> {
        let (landmarks, net) = (c_path(landmarks)?, c_path(net)?);
        let mut err = [0u8; 512];
        // SAFETY: both paths are NUL-terminated and outlive the call; `err`
        // is writable for its length.
        let raw = unsafe { wf_open(landmarks.as_ptr(), net.as_ptr(), err.as_mut_ptr().cast(), err.len()) };
        if raw.is_null() {
            Err(message(&err))
        } else {
            Ok(Self(raw))
        }
    }

    pub(crate) fn faces(&self, img: &RgbImage, max: usize) -> Result<Vec<Face>, String> {
        let mut descriptors = vec![0f32; max * 128];
        let mut marks = vec![0f32; max * 136];
        let mut boxes = vec![0 as c_long; max * 4];
        let mut err = [0u8; 512];
        // SAFETY: `img` holds w*h*3 bytes; each output buffer has room for
        // `max` faces, as the shim writes at most `max`; `self.0` is live.
        let n = unsafe {
            wf_faces(
                self.0,
                img.as_raw().as_ptr(),
                c_long::from(img.width()),
                c_long::from(img.height()),
                max as c_int,
                descriptors.as_mut_ptr(),
                marks.as_mut_ptr(),
                boxes.as_mut_ptr(),
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if n < 0 {
            return Err(message(&err));
        }
        Ok((0..n as usize)
            .map(|i| {
                let mut face = Face { descriptor: [0.0; 128], landmarks: [(0.0, 0.0); 68], bbox: [0; 4] };
                face.descriptor.copy_from_slice(&descriptors[i * 128..(i + 1) * 128]);
                for k in 0..68 {
                    face.landmarks[k] = (marks[i * 136 + 2 * k], marks[i * 136 + 2 * k + 1]);
                }
                for k in 0..4 {
                    face.bbox[k] = boxes[i * 4 + k] as i64;
                }
                face
            })
            .collect())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `wf_open` and is closed once.
        unsafe { wf_close(self.0) }
    }
}

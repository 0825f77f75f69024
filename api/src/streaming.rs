//! Files sent as they are read — recordings (and their ranges), review
//! packages, audit exports — 64 KiB at a time, never whole in memory: a
//! browser seeking in an hour's recording asks for many ranges of it.

use tokio::io::{AsyncRead, AsyncReadExt};

const CHUNK: usize = 64 * 1024;

/// A response body of `length` bytes of `file` from where it stands,
/// holding `keep` (a scratch directory, say) until it is sent or dropped.
pub(crate) fn body<K: Send + 'static>(
    file: impl AsyncRead + Unpin + Send + 'static,
    length: u64,
    keep: K,
) -> axum::body::Body {
    let chunks = futures_util::stream::unfold((file.take(length), keep), |(mut file, keep)| async move {
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(buffer), (file, keep)))
            }
            Err(e) => Some((Err(e), (file, keep))),
        }
    });
    axum::body::Body::from_stream(chunks)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_is_the_files_bytes_from_where_it_stands_for_its_length() {
        use tokio::io::AsyncSeekExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        for (start, length) in [(0, 200_000), (1, 70_000), (131_072, 65_536), (199_999, 1), (5, 0)] {
            let mut file = tokio::fs::File::open(&path).await.unwrap();
            file.seek(std::io::SeekFrom::Start(start)).await.unwrap();
            let sent = super::body(file, length, ()).collect().await.unwrap().to_bytes();
            assert_eq!(&sent[..], &bytes[start as usize..(start + length) as usize], "{start}+{length}");
        }
    }
}

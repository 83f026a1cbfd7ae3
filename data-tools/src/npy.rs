//! A reader for NumPy `.npy` arrays (format versions 1–3), enough for the reference's feature
//! files: little-endian float arrays (`<f4`, `<f8`), C or Fortran order.

/// A float array read as f32, row-major.
#[derive(Debug)]
pub struct Array {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// Parses `.npy` bytes; errors say what is wrong (the caller adds the file name).
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
            (n as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let fortran = match fortran {
        "True" => true,
        "False" => false,
        v => return Err(format!("bad fortran_order {v}")),
    };
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let size = match descr {
        "<f4" => 4,
        "<f8" => 8,
        d => return Err(format!("unsupported dtype {d} (expected <f4 or <f8)")),
    };
    let body = &bytes[end..];
    if body.len() != count * size {
        return Err(format!(
            "data size mismatch: shape {shape:?} of {descr} needs {} bytes, found {}",
            count * size,
            body.len()
        ));
    }
    let mut data: Vec<f32> = if size == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect()
    };
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0.0; data.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = data[j * r + i];
            }
        }
        data = t;
    } else if fortran && shape.len() > 2 {
        return Err("Fortran-ordered arrays of more than 2 dimensions are not supported".into());
    }
    Ok(Array { shape, data })
}

/// The text of `key`'s value in a Python dict literal (`'key': value,`), trimmed.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[k + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_f4_f8_and_fortran_order() {
        let v: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = parse(&npy("<f4", false, "(2, 3)", &v)).unwrap();
        assert_eq!(
            (a.shape, a.data),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let a = parse(&npy("<f4", true, "(2, 3)", &v)).unwrap();
        assert_eq!(a.data, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let d: Vec<u8> = [0.5f64, -1.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = parse(&npy("<f8", false, "(2,)", &d)).unwrap();
        assert_eq!((a.shape, a.data), (vec![2], vec![0.5, -1.0]));
        assert!(
            parse(&npy("<i4", false, "(2,)", &d))
                .unwrap_err()
                .contains("dtype")
        );
        assert!(
            parse(&npy("<f4", false, "(3, 3)", &v))
                .unwrap_err()
                .contains("mismatch")
        );
        let full = npy("<f4", false, "(2, 3)", &v);
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).is_err());
        }
    }
}

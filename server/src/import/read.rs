//! Reading a legacy CSV file: its encoding, its delimiter, and its records
//! with the line each starts on.

use std::io::{self, BufRead, BufReader, Read};

use super::mapping::Encoding;

/// A record of the file: the line it starts on, its cells (bytes that are
/// not text replaced), and why its bytes are not text, if they are not.
pub type Record = (u64, Vec<String>, Option<String>);

/// The records of a CSV file after its header.
pub struct Records {
    reader: csv::Reader<Box<dyn Read + Send>>,
    headers: Vec<String>,
    encoding: Encoding,
    record: csv::ByteRecord,
}

impl Records {
    /// Opens `input` as CSV: a UTF-8 byte-order mark is skipped, Latin-1 is
    /// read as such, and the delimiter (when not given) is the one of `,`,
    /// `;`, tab and `|` the header line uses most.
    pub fn open(input: impl Read + Send + 'static, encoding: Encoding, delimiter: Option<u8>) -> anyhow::Result<Self> {
        let mut buffered = BufReader::with_capacity(1 << 16, input);
        let head = buffered.fill_buf()?;
        if head.starts_with(b"\xEF\xBB\xBF") {
            buffered.consume(3);
        }
        let head = buffered.fill_buf()?;
        let delimiter = match delimiter {
            Some(delimiter) => delimiter,
            None => sniff_delimiter(head),
        };
        // Records end at `\n` and a `\r` before it is cut from the last
        // cell: the reader's own CRLF handling reports every record of a
        // Windows file one line early. Files ending lines with `\r` alone
        // (classic Mac OS) keep the reader's handling.
        let cr_only = head.contains(&b'\r') && !head.contains(&b'\n');
        let terminator = if cr_only { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
        let decoded: Box<dyn Read + Send> = match encoding {
            Encoding::Utf8 => Box::new(buffered),
            Encoding::Latin1 => Box::new(Latin1 { inner: buffered, pending: None }),
        };
        let mut reader =
            csv::ReaderBuilder::new().delimiter(delimiter).terminator(terminator).flexible(true).from_reader(decoded);
        let headers = reader
            .byte_headers()?
            .iter()
            .map(|h| String::from_utf8(h.to_vec()).map_err(|_| not_utf8()))
            .collect::<Result<Vec<_>, _>>()
            .map(without_cr)
            .map_err(|e| anyhow::anyhow!("the header line {e}"))?;
        anyhow::ensure!(
            headers.iter().any(|h| !h.trim().is_empty()),
            "the file has no header line: its first line must name the columns"
        );
        Ok(Self { reader, headers, encoding, record: csv::ByteRecord::new() })
    }

    /// The column names of the header line.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The next record; `None` at the end; an error when the file cannot be read.
    pub fn next_record(&mut self) -> anyhow::Result<Option<Record>> {
        if !self.reader.read_byte_record(&mut self.record)? {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        let mut text = true;
        let cells = self
            .record
            .iter()
            .map(|cell| match std::str::from_utf8(cell) {
                Ok(cell) => cell.to_owned(),
                Err(_) => {
                    text = false;
                    String::from_utf8_lossy(cell).into_owned()
                }
            })
            .collect();
        let error = (!text).then(|| match self.encoding {
            Encoding::Utf8 => not_utf8(),
            Encoding::Latin1 => "is not text".to_owned(),
        });
        Ok(Some((line, without_cr(cells), error)))
    }
}

/// `cells` without the `\r` of a CRLF line end on the last one.
fn without_cr(mut cells: Vec<String>) -> Vec<String> {
    if let Some(last) = cells.last_mut()
        && last.ends_with('\r')
    {
        last.pop();
    }
    cells
}

fn not_utf8() -> String {
    "is not valid UTF-8: if the file is Latin-1 (ISO 8859-1), say so with --encoding latin-1".to_owned()
}

/// The delimiter of the first line of `head`: the most frequent of `,`,
/// `;`, tab and `|` outside quotes (`,` when none appears).
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0), (b'|', 0)];
    let mut quoted = false;
    for &byte in line {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(count) = counts.iter_mut().find(|(d, _)| *d == byte) {
            count.1 += 1;
        }
    }
    counts.iter().max_by_key(|(_, n)| *n).filter(|(_, n)| *n > 0).map_or(b',', |(d, _)| *d)
}

/// Reads Latin-1 bytes as UTF-8: every byte is the code point of its value.
struct Latin1<R> {
    inner: R,
    /// The second byte of a character that did not fit the last read.
    pending: Option<u8>,
}

impl<R: Read> Read for Latin1<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        if let Some(byte) = self.pending.take() {
            out[0] = byte;
            written = 1;
        }
        let mut buffer = [0u8; 4096];
        let room = (out.len() - written).div_ceil(2).min(buffer.len());
        if room == 0 {
            return Ok(written);
        }
        let read = self.inner.read(&mut buffer[..room])?;
        for &byte in &buffer[..read] {
            if byte < 0x80 {
                out[written] = byte;
                written += 1;
            } else {
                let mut encoded = [0u8; 2];
                char::from(byte).encode_utf8(&mut encoded);
                out[written] = encoded[0];
                written += 1;
                if written < out.len() {
                    out[written] = encoded[1];
                    written += 1;
                } else {
                    self.pending = Some(encoded[1]);
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &'static [u8], encoding: Encoding) -> (Vec<String>, Vec<Record>) {
        let mut records = Records::open(bytes, encoding, None).expect("opens");
        let mut all = Vec::new();
        while let Some(record) = records.next_record().expect("reads") {
            all.push(record);
        }
        (records.headers().to_vec(), all)
    }

    #[test]
    fn a_bom_is_skipped_and_the_delimiter_sniffed() {
        let (headers, rows) = read_all(b"\xEF\xBB\xBFid;name\n1;\"M\xC3\xBCller; Hans\"\n", Encoding::Utf8);
        assert_eq!(headers, ["id", "name"]);
        assert_eq!(rows[0].1, ["1", "Müller; Hans"]);
    }

    #[test]
    fn latin1_is_read_as_such_and_utf8_errors_name_the_flag() {
        let (_, rows) = read_all(b"id\tname\n1\tM\xFCller\n", Encoding::Latin1);
        assert_eq!((rows[0].1.as_slice(), rows[0].2.as_deref()), (&["1".to_owned(), "Müller".to_owned()][..], None));
        let (_, rows) = read_all(b"id,name\n1,M\xFCller\n", Encoding::Utf8);
        assert!(rows[0].2.as_deref().expect("not UTF-8").contains("--encoding latin-1"));
        assert_eq!(rows[0].1, ["1", "M\u{FFFD}ller"], "the cells, for the error file");
    }

    #[test]
    fn quoted_newlines_keep_the_line_a_record_starts_on() {
        let lines = |bytes| read_all(bytes, Encoding::Utf8).1.iter().map(|(line, _, _)| *line).collect::<Vec<_>>();
        assert_eq!(lines(b"id,note\n1,\"two\nlines\"\n2,plain\n"), [2, 4]);
        assert_eq!(lines(b"id,note\r\n1,\"two\r\nlines\"\r\n2,plain\r\n"), [2, 4], "Windows line ends");
        let (headers, rows) = read_all(b"id,note\r\n1,\"two\r\nlines\"\r\n", Encoding::Utf8);
        assert_eq!((headers[1].as_str(), rows[0].1[1].as_str()), ("note", "two\r\nlines"));
    }

    #[test]
    fn latin1_survives_tiny_reads() {
        let mut reader = Latin1 { inner: &b"\xE9t\xE9"[..], pending: None };
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while reader.read(&mut byte).expect("reads") == 1 {
            out.push(byte[0]);
        }
        assert_eq!(String::from_utf8(out).expect("utf-8"), "été");
    }
}

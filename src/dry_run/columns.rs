//! Aligned text columns for reports that stream (dry-run lines, inspect's listing): the
//! widths are fixed up front, a text cell longer than its column is shortened with a
//! `…` in the middle (its start and end are what tell ids and names apart), and a cell
//! that cannot be shortened (a number, a duration) pushes only the cells after it until
//! a shortened cell takes the slack back. Widths are counted in characters.

/// How a column's cells sit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One column: its width, its alignment, and whether a longer cell is shortened.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub width: usize,
    pub align: Align,
    /// Shorten a longer cell with `…` (text); otherwise it overflows (numbers).
    pub shorten: bool,
}

impl Column {
    /// A text column: left-aligned, shortened to its width.
    pub const fn text(width: usize) -> Column {
        Column {
            width,
            align: Align::Left,
            shorten: true,
        }
    }

    /// A column of numbers (or other cells never shortened), right-aligned.
    pub const fn number(width: usize) -> Column {
        Column {
            width,
            align: Align::Right,
            shorten: false,
        }
    }

    /// A left-aligned column that is never shortened (a duration, an action name).
    pub const fn left(width: usize) -> Column {
        Column {
            width,
            align: Align::Left,
            shorten: false,
        }
    }
}

/// Two blanks between columns.
const GAP: usize = 2;

/// One row: each cell in its column, columns `GAP` apart; the last cell is not padded
/// (and trailing blanks are trimmed). Cells beyond `columns` are appended as they are,
/// after the last column.
pub fn row(columns: &[Column], cells: &[&str]) -> String {
    let mut out = String::new();
    row_into(&mut out, columns, cells);
    out
}

/// [`row`], appended to `out` (a buffer a streaming report reuses line after line).
pub fn row_into(out: &mut String, columns: &[Column], cells: &[&str]) {
    let origin = out.len();
    let mut at = 0usize; // characters written so far
    let mut start = 0usize; // where the current column starts
    for (i, cell) in cells.iter().enumerate() {
        let col = columns.get(i).copied().unwrap_or(Column::left(0));
        let begin = if i == 0 { 0 } else { at + GAP }.max(start);
        let end = start + col.width;
        let room = end.saturating_sub(begin).max(1);
        let mut len = char_count(cell);
        let shown = if col.shorten && len > room {
            len = room;
            shorten(cell, room)
        } else {
            std::borrow::Cow::Borrowed(*cell)
        };
        let first = match col.align {
            Align::Right if len < end.saturating_sub(begin) => end - len,
            _ => begin,
        };
        pad(out, &mut at, first);
        out.push_str(&shown);
        at += len;
        start = end + GAP;
    }
    let trimmed = origin + out[origin..].trim_end().len();
    out.truncate(trimmed);
}

/// Characters in `s` (bytes, for ASCII).
fn char_count(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

fn pad(out: &mut String, at: &mut usize, to: usize) {
    const BLANKS: &str = "                                                                ";
    while *at < to {
        let n = (to - *at).min(BLANKS.len());
        out.push_str(&BLANKS[..n]);
        *at += n;
    }
}

/// `s` in at most `width` characters (at least 1): as it is when it fits, else its
/// start, `…`, and its end.
pub fn shorten(s: &str, width: usize) -> std::borrow::Cow<'_, str> {
    let width = width.max(1);
    let n = s.chars().count();
    if n <= width {
        return std::borrow::Cow::Borrowed(s);
    }
    let keep = width - 1;
    let tail = keep / 2;
    let head = keep - tail;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Column; 3] = [Column::number(3), Column::text(6), Column::left(4)];

    #[test]
    fn short_cells_are_padded_into_their_columns() {
        assert_eq!(row(&COLS, &["1", "ab", "x"]), "  1  ab      x");
        assert_eq!(row(&COLS, &["1", "ab", ""]), "  1  ab");
    }

    #[test]
    fn a_long_text_cell_is_shortened_in_the_middle() {
        assert_eq!(row(&COLS, &["1", "abcdefghij", "x"]), "  1  abc…ij  x");
        assert_eq!(shorten("abcdefghij", 1), "…");
        assert_eq!(shorten("é€abc", 5), "é€abc");
        assert_eq!(shorten("é€abcd", 5), "é€…cd");
    }

    #[test]
    fn an_overflowing_number_is_absorbed_by_the_next_text_cell() {
        // 5 digits in a 3-wide column: the text column gives up two characters.
        assert_eq!(row(&COLS, &["12345", "abcdefghij", "x"]), "12345  ab…j  x");
        assert_eq!(row(&COLS, &["12345", "ab", "x"]), "12345  ab    x");
    }

    #[test]
    fn a_row_appended_to_a_buffer_equals_the_row_alone() {
        let rows: [&[&str]; 4] = [
            &["1", "ab", "x"],
            &["12345", "abcdefghij", "x"],
            &["1", "é€abcdé€", "\u{3000}"],
            &["1", "a", "b", "rest  "],
        ];
        let mut buf = String::from("before\n");
        for cells in rows {
            let start = buf.len();
            row_into(&mut buf, &COLS, cells);
            assert_eq!(&buf[start..], row(&COLS, cells));
            buf.push('\n');
        }
        // Trimming stops at the start of the row.
        let mut buf = String::from("x  ");
        row_into(&mut buf, &COLS, &[""]);
        assert_eq!(buf, "x  ");
    }

    #[test]
    fn extra_cells_are_appended() {
        assert_eq!(
            row(&COLS, &["1", "a", "b", "rest"]),
            "  1  a       b     rest"
        );
    }
}

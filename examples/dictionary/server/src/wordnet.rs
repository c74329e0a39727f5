//! Reading WordNet's `data.{noun,verb,adj,adv}` files into word → definitions.
//!
//! A data line is `offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] ... | gloss`,
//! with `w_cnt` in hexadecimal; lines starting with spaces are the licence header.

use std::collections::HashMap;
use std::path::Path;

/// The lookup form of a word: lower case, spaces as underscores.
pub fn key(word: &str) -> String {
    word.trim().to_lowercase().replace(' ', "_")
}

/// Parses one data line into its words and gloss.
pub fn parse_line(line: &str) -> Option<(Vec<String>, String)> {
    if line.starts_with(' ') {
        return None;
    }
    let (head, gloss) = line.split_once(" | ")?;
    let fields: Vec<&str> = head.split_whitespace().collect();
    let kind = *fields.get(2)?;
    let count = usize::from_str_radix(fields.get(3)?, 16).ok()?;
    let words = (0..count)
        .filter_map(|i| fields.get(4 + 2 * i))
        .map(|w| key(w.split('(').next().unwrap_or(w)))
        .collect();
    let part = match kind {
        "n" => "noun",
        "v" => "verb",
        "a" | "s" => "adjective",
        "r" => "adverb",
        _ => "",
    };
    Some((words, format!("({part}) {}", gloss.trim())))
}

/// Loads every part of speech from `dir`.
pub fn load(dir: &Path) -> std::io::Result<HashMap<String, Vec<String>>> {
    let mut words: HashMap<String, Vec<String>> = HashMap::new();
    for part in ["noun", "verb", "adj", "adv"] {
        let text = std::fs::read_to_string(dir.join(format!("data.{part}")))?;
        for (names, gloss) in text.lines().filter_map(parse_line) {
            for name in names {
                words.entry(name).or_default().push(gloss.clone());
            }
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_data_line() {
        let line = "02084071 05 n 05 dog 0 domestic_dog 0 Canis_familiaris 0 pup 1 puppy 0 023 @ 02083346 n 0000 | a member of the genus Canis  ";
        let (words, gloss) = parse_line(line).unwrap();
        assert_eq!(
            words,
            vec!["dog", "domestic_dog", "canis_familiaris", "pup", "puppy"]
        );
        assert_eq!(gloss, "(noun) a member of the genus Canis");
        assert!(parse_line("  1 This software and database is being provided").is_none());
    }

    #[test]
    fn adjective_markers_are_dropped() {
        let (words, _) =
            parse_line("00001740 00 a 01 able(a) 0 005 | having the necessary means").unwrap();
        assert_eq!(words, vec!["able"]);
    }
}

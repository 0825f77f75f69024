//! The first responder: what the bot does with a customer's message while
//! the session is with the bot.
//!
//! Asking for a person ("人工", "转人工", "agent", "human", …) hands the
//! session over with the conversation so far. Anything else gets the
//! knowledge base's best answer when one scores above the threshold, and
//! otherwise an honest "not sure" with the offer of a human. A tenant with
//! no FAQ imported has no answer above the threshold.

use crate::i18n::Lang;

/// What the bot decides to do with one customer message.
#[derive(Debug, Clone, PartialEq)]
pub enum BotReply {
    /// Transfer to a human.
    Handoff,
    /// An FAQ answer, with its id and score.
    Answer { text: String, faq_id: String, score: f64 },
    /// Nothing good enough: say so and offer a human.
    NotSure { text: String },
}

/// What a customer types to reach a person. Matched on the whole message,
/// trimmed and case-folded, or as a word inside a short one.
const HANDOFF_WORDS: &[&str] = &["人工", "转人工", "人工客服", "agent", "human", "person", "operator"];

/// Whether `text` asks for a person.
pub fn asks_for_human(text: &str) -> bool {
    let folded = text.trim().to_lowercase();
    let folded = folded.trim_matches(|c: char| c.is_ascii_punctuation() || "。！？，".contains(c));
    if HANDOFF_WORDS.contains(&folded) {
        return true;
    }
    // "talk to a human please", "我要转人工": short messages that contain one.
    folded.chars().count() <= 40
        && (folded.contains("人工")
            || folded
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| ["agent", "human", "person", "operator"].contains(&w)))
}

/// The bot's reply to `text`, given the knowledge base's best hit; when it
/// is not sure, it says so in `lang`.
pub fn reply(text: &str, best: Option<(String, String, f64)>, threshold: f64, lang: Lang) -> BotReply {
    if asks_for_human(text) {
        return BotReply::Handoff;
    }
    match best {
        Some((faq_id, answer, score)) if score >= threshold => BotReply::Answer { text: answer, faq_id, score },
        _ => BotReply::NotSure { text: lang.text("server.bot_not_sure").to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handoff_words_in_chinese_and_english_ask_for_a_human() {
        for text in ["人工", "转人工", " Agent ", "HUMAN!", "我要转人工", "talk to a human please", "人工客服。"]
        {
            assert!(asks_for_human(text), "{text}");
        }
        for text in
            ["How do I reset my password?", "信用卡年费怎么收", "agents of change in the mortgage market are many"]
        {
            assert!(!asks_for_human(text), "{text}");
        }
    }

    #[test]
    fn an_answer_below_the_threshold_is_not_given() {
        let hit = Some(("faq-1".to_owned(), "The fee is waived.".to_owned(), 0.4));
        assert_eq!(
            reply("annual fee?", hit.clone(), 0.5, Lang::ZhCn),
            BotReply::NotSure { text: Lang::ZhCn.text("server.bot_not_sure").into() }
        );
        assert!(
            matches!(reply("annual fee?", hit.clone(), 0.5, Lang::En), BotReply::NotSure { text } if text.starts_with("I'm not sure"))
        );
        assert_eq!(
            reply("annual fee?", hit, 0.3, Lang::En),
            BotReply::Answer { text: "The fee is waived.".into(), faq_id: "faq-1".into(), score: 0.4 }
        );
        assert_eq!(reply("转人工", None, 0.5, Lang::En), BotReply::Handoff);
    }
}

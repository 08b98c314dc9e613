//! The similarity of each sentence to a question, as the embedder ranks them (to see what a relevance threshold
//! keeps):
//!
//! ```sh
//! cargo run --release -p tributary-models --example rank -- EMBEDDER_DIR "question?" "sentence one." "sentence two."
//! ```

use std::path::PathBuf;

use tributary_models::Embedder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let usage = "usage: rank EMBEDDER_DIR QUESTION SENTENCE...";
    let directory = PathBuf::from(arguments.next().ok_or(usage)?);
    let question = arguments.next().ok_or(usage)?;
    let sentences: Vec<String> = arguments.collect();
    let embedder = Embedder::load(&directory)?;
    let references: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let scores = embedder
        .rank(&[question.as_str()], &references, &|| false)?
        .ok_or("stopped")?
        .remove(0);
    for (score, sentence) in scores.iter().zip(&sentences) {
        println!("{score:.3}  {sentence}");
    }
    Ok(())
}

//! Caption metrics equal to the coco-caption toolkit: PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr-D.

pub mod meteor;

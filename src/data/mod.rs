//! Data: the memory-mapped feature store, vocabulary and captions, the batch loader, the synthetic world.

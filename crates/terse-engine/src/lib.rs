//! terse's inference engine: GGUF models on quantized CPU kernels, a paged KV cache with
//! copy-on-write forks, packed-batch forward passes, and a sampler chain.

pub mod batch;
pub mod engine;
pub mod kv_cache;
pub mod model;
pub mod prefix_cache;
pub mod profile;
pub mod sampler;
pub mod steer;

pub use batch::{BatchScheduler, Generation, GenerationRequest, RequestId, TokenUsage};
pub use engine::{
    Engine, EngineError, EngineOptions, GenerationStats, Outputs, Span, StepOutput, StopReason,
    PREFILL_CHUNK_TOKENS,
};
pub use kv_cache::SeqId;
pub use profile::{Profile, ProfileEntry};
pub use sampler::{SampledToken, Sampler, SamplerConfig};
pub use steer::{
    Action, ProbeEnd, ProbeRequest, ProbeResult, Steering, SteeringReserve, StopCause, TokenEvent,
    TopLogprob,
};
pub use terse_gguf::GgufFile;
pub use terse_tokenizer::chat_template::{ChatMessage, ChatTemplate};
pub use terse_tokenizer::{StreamDecoder, Tokenizer};

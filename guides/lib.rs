//! The guides are Markdown in `src/`; this crate only holds their test.

//! Login and logout at the company's OpenID provider (SPEC §7). Being
//! built (issue 14); what is here is complete and tested on its own, and
//! nothing in the request path uses it yet.

pub mod return_url;
pub mod seal;

//! The MineBox Stratum V1 server (work in progress, see issue 2).

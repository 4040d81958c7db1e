//! Packs, verifies and installs aapi plugin packages.

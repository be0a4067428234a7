//! One module a page.

mod home;
mod landing;
mod login;
mod not_found;

pub use home::HomePage;
pub use landing::LandingPage;
pub use login::{LoginPage, SignupPage};
pub use not_found::NotFoundPage;

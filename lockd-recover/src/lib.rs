//! lockd-recover (issue 5)

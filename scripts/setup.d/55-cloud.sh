# MineBox Cloud's tests (crates/daemons/cloud): Debian's PostgreSQL, of which the test kit
# (crates/testkits/pg) runs initdb and pg_ctl from /usr/lib/postgresql/<version>/bin to make a
# throwaway cluster per test (as the `postgres` user the package creates, when the tests run as
# root: the server refuses to run as root), and aiosmtpd, a real SMTP server that keeps the mail
# the service sends for the tests to read.
need_apt postgresql python3-aiosmtpd

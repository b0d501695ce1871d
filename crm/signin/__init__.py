"""Sign-in to the admin: lockout (django-axes), second factor (django-otp), idle timeout, audit of every
attempt, sessions ended when a password or role goes (issue #13).

Django's admin login, ModelBackend and sessions do the work; this package only adds the rules around them:
`services` writes (audit entries, ended sessions, second-factor devices), `selectors` reads (who needs a
second factor), `middleware` enforces the idle timeout and the second factor on admin pages, `views` are the
second factor's enrolment and verification pages, `receivers` connect Django's and the libraries' signals.
"""

# Thin aliases for ./dev (which does the installing); see README.
.PHONY: demo test e2e lint bench setup lock
demo test e2e lint bench setup lock:
	./dev $@

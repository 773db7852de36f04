# The two commands of the README, plus the pieces they are made of.
# Everything is in tests/stack/stack.sh so it also works without make.

.PHONY: run test setup up down status

run:    ## local stack + demo tenant + `cargo lambda watch` on :9000
	@tests/stack/stack.sh run

test:   ## set up, start the stack, fmt + clippy + every test, stop the stack
	@tests/stack/stack.sh test

setup:  ## install/resolve what the stack needs (idempotent)
	@tests/stack/stack.sh setup

up:     ## start the stack (or reuse the running one)
	@tests/stack/stack.sh up

down:   ## stop the stack
	@tests/stack/stack.sh down

status:
	@tests/stack/stack.sh status

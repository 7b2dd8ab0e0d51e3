# Sourced by the scripts that run on a stack of their own (test.sh, chaos.sh), after env.sh:
# the stack starts from nothing and is gone at the end, Postgres cluster included (it may
# live outside the state folder).

# Stops whatever an interrupted run left, then wipes its state.
own_stack_fresh() {
    "$KCHAT_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
    rm -rf "$KCHAT_STATE_DIR"
}

# Stops the stack and deletes its Postgres cluster; never fails.
own_stack_down() {
    "$KCHAT_ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
    "$KCHAT_ROOT/scripts/pg.sh" destroy >/dev/null 2>&1 || true
}

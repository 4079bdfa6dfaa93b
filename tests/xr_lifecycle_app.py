"""The OpenXR owners' lifecycle against a real runtime (run by test_headset.py in the Monado setup).

Checks, printing one ``ok NAME`` line each (the test reads them):

* ``break``: leaving :meth:`HeadsetSession.frames` with ``break`` ends the begun frame;
* ``raise``: so does an exception in the loop body (it still reaches the caller);
* ``half-way``: a session whose constructor fails after ``xrCreateSession`` destroys it, so the
  instance can create the next one (a runtime allows one session per instance at a time);
* ``twice``: session, swapchains, runtime and GL context each close twice without error.

    python xr_lifecycle_app.py
"""

import sys


def main() -> None:
    import xr

    from vrstyle.xr import session as session_module
    from vrstyle.xr.graphics import create_context
    from vrstyle.xr.runtime import choose_binding, open_runtime, runtime_extensions, use_gl_platform
    from vrstyle.xr.session import HeadsetSession

    extensions = runtime_extensions()
    binding = choose_binding(extensions, "auto")
    use_gl_platform(binding)
    runtime = open_runtime(binding, extensions)
    context = create_context(binding)
    counts = {"begin": 0, "end": 0}
    for name in counts:
        real = getattr(xr, f"{name}_frame")
        setattr(session_module.xr, f"{name}_frame",
                lambda *args, _real=real, _name=name: counts.__setitem__(_name, counts[_name] + 1) or _real(*args))

    session = HeadsetSession(runtime, binding, context)
    for frame in session.frames():
        if frame.views:
            break
    assert counts["begin"] == counts["end"] > 0, counts
    print("ok break", flush=True)

    try:
        for frame in session.frames():
            raise KeyError("from the loop body")
    except KeyError:
        pass
    assert counts["begin"] == counts["end"], counts
    print("ok raise", flush=True)
    session.close()

    real_choose = session_module.choose_format
    session_module.choose_format = lambda offered: (_ for _ in ()).throw(RuntimeError("injected"))
    try:
        HeadsetSession(runtime, binding, context)
    except RuntimeError as exc:
        assert str(exc) == "injected", exc  # the injected failure, not another one
    else:
        raise AssertionError("the session was made although choose_format failed")
    session_module.choose_format = real_choose
    again = HeadsetSession(runtime, binding, context)  # xrCreateSession refuses while the failed one lives
    print("ok half-way", flush=True)

    for owner in (again.swapchains, again, again, runtime, runtime, context, context):
        owner.close()
    assert again.closed and again.swapchains.closed and runtime.closed and context.closed
    print("ok twice", flush=True)


if __name__ == "__main__":
    sys.exit(main())

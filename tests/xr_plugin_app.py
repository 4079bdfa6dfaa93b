"""An existing pyopenxr app, stylised through the plugin API (run by test_headset.py).

Written the way a pyopenxr app is, with its own instance, session, swapchains and frame
loop; the only vrstyle code is the pipeline and the one :meth:`Stylizer.apply` call before
the images are released and the frame is ended. It draws coloured boxes that move with
the frame count into a linear (RGBA16F) swapchain, so the plugin's linear path is exercised.

    python xr_plugin_app.py BROKER_URL STYLE FRAMES RECORD_DIR [DEPTH]
"""

import ctypes
import json
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # an EGL app: PyOpenGL must track EGL's current context
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    import numpy as np
    import xr
    import xr.utils
    from OpenGL import GL
    from xr.utils.gl.egl_util import EGLGraphicsBinding, EGLOffscreenContextProvider

    from vrstyle.pipeline import FramePipeline
    from vrstyle.transport import TransportClient
    from vrstyle.xr import Stylizer
    from vrstyle.xr.textures import read_texture

    broker, style, frames, record = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    context = EGLOffscreenContextProvider()
    context.make_current()
    instance = xr.create_instance(xr.InstanceCreateInfo(enabled_extension_names=[
        xr.KHR_OPENGL_ENABLE_EXTENSION_NAME, xr.MNDX_EGL_ENABLE_EXTENSION_NAME]))
    system = xr.get_system(instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
    requirements = xr.GraphicsRequirementsOpenGLKHR()
    get_requirements = ctypes.cast(xr.get_instance_proc_addr(instance, "xrGetOpenGLGraphicsRequirementsKHR"),
                                   xr.PFN_xrGetOpenGLGraphicsRequirementsKHR)
    get_requirements(instance, system, ctypes.byref(requirements))
    binding = EGLGraphicsBinding(context)
    session = xr.create_session(instance, xr.SessionCreateInfo(system_id=system, next=binding.pointer))
    space = xr.create_reference_space(session, xr.ReferenceSpaceCreateInfo(reference_space_type=xr.ReferenceSpaceType.LOCAL))
    stereo = xr.ViewConfigurationType.PRIMARY_STEREO
    swapchains = [xr.utils.SwapchainInfo(view, session, GL.GL_RGBA16F, xr.SwapchainImageOpenGLKHR)
                  for view in xr.enumerate_view_configuration_views(instance, system, stereo)]
    width, height = swapchains[0].size
    fbo = GL.glGenFramebuffers(1)

    # The plugin: a pipeline to the workers, and the stylizer the loop calls.
    pipeline = FramePipeline.plan(TransportClient(broker), height, width, style, workers=2, halo=16, overlap=8)
    stylizer = Stylizer(pipeline, depth=depth)

    state, running, count, log, recorded_fresh = xr.SessionState.UNKNOWN, False, 0, [], False
    while state != xr.SessionState.EXITING:
        while True:
            try:
                event = xr.poll_event(instance)
            except xr.EventUnavailable:
                break
            if xr.StructureType(event.type) == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                state = xr.SessionState(ctypes.cast(ctypes.byref(event),
                                                    ctypes.POINTER(xr.EventDataSessionStateChanged)).contents.state)
                if state == xr.SessionState.READY:
                    xr.begin_session(session, xr.SessionBeginInfo(primary_view_configuration_type=stereo))
                    running = True
                elif state == xr.SessionState.STOPPING:
                    xr.end_session(session)
                    running = False
        if not running:
            continue
        frame_state = xr.wait_frame(session)
        xr.begin_frame(session)
        layers = []
        if frame_state.should_render and count < frames:
            _, views = xr.locate_views(session, xr.ViewLocateInfo(
                view_configuration_type=stereo, display_time=frame_state.predicted_display_time, space=space))
            textures = []
            for eye, chain in enumerate(swapchains):
                index = xr.acquire_swapchain_image(chain.swapchain, xr.SwapchainImageAcquireInfo())
                xr.wait_swapchain_image(chain.swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
                textures.append(chain.images[index].image)
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
                GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, textures[-1], 0)
                GL.glViewport(0, 0, width, height)
                GL.glClearColor(0.1, 0.2 + 0.3 * eye, 0.4, 1.0)
                GL.glClear(GL.GL_COLOR_BUFFER_BIT)
                GL.glEnable(GL.GL_SCISSOR_TEST)
                for box in range(6):
                    x = (box * 53 + count * 3 + eye * 9) % width
                    GL.glScissor(x, (box * 37) % height, width // 5, height // 4)
                    GL.glClearColor(box / 6, 1 - box / 6, (box % 2) * 0.8, 1.0)
                    GL.glClear(GL.GL_COLOR_BUFFER_BIT)
                GL.glDisable(GL.GL_SCISSOR_TEST)
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

            shown = stylizer.apply(frame_state, textures, views)  # <- the plugin API

            result = stylizer.shown.result
            fresh = result is not None and len(result.fallback) < len(result.tiles)
            if result is not None and (count % 5 == 0 or (fresh and not recorded_fresh)):  # >= 1 fresh on a slow machine
                recorded_fresh = recorded_fresh or fresh
                np.savez_compressed(record / f"frame{count:05d}.npz", submitted=np.stack([read_texture(t) for t in textures]),
                                    raw=stylizer.shown.eyes, tiles=result.tiles, fallback=np.array(sorted(result.fallback)))
            for chain in swapchains:
                xr.release_swapchain_image(chain.swapchain, xr.SwapchainImageReleaseInfo())
            projection_views = (xr.CompositionLayerProjectionView * 2)()
            for layer_view, view, chain in zip(projection_views, shown, swapchains):
                layer_view.pose, layer_view.fov = view.pose, view.fov
                layer_view.sub_image.swapchain = chain.swapchain
                layer_view.sub_image.image_rect.extent = xr.Extent2Di(width, height)
            layer = xr.CompositionLayerProjection(space=space, views=projection_views)
            layers = [ctypes.byref(layer)]
            log.append({"submitted": stylizer.submitted, "shown": stylizer.shown.frame_id,
                        "in_place": pipeline.counters["ring_frames_in_place"],
                        "poses": [[v.pose.position.x, v.pose.orientation.y] for v in shown],
                        "located": [[v.pose.position.x, v.pose.orientation.y] for v in views]})
            count += 1
            if count == frames:
                xr.request_exit_session(session)
        xr.end_frame(session, xr.FrameEndInfo(display_time=frame_state.predicted_display_time,
                                              environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE, layers=layers))

    (record / "timeline.json").write_text(json.dumps(log))
    stylizer.close()
    pipeline.close()
    for chain in swapchains:
        xr.destroy_swapchain(chain.swapchain)
    xr.destroy_space(space)
    xr.destroy_session(session)
    xr.destroy_instance(instance)
    print("frames", count)


if __name__ == "__main__":
    main()

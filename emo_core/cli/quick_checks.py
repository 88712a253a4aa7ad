"""``generate``'s refusals that need only options, paths and file headers, made before torch,
diffusers or the pipeline are imported (issue 23, class 9: <= 1 s of CPU, <= 150 MB).

The option checks are :func:`emo_core.pipeline.preflight.check_options`, the first part of
:func:`~emo_core.pipeline.preflight.preflight_request`; the path checks are its single checks (same
messages); what needs torch (a WAV's data size, wav2vec2 config bounds, the full EMO header)
is left to that full preflight, which runs right after the imports.
"""

from __future__ import annotations


def quick_generate_checks(args) -> None:
    """Raise :class:`~emo_core.errors.EMOInputError` for what options, paths and headers show."""
    from ..errors import CheckpointError
    from ..io.checkpoint_path import check_checkpoint_header
    from ..pipeline.preflight import (
        check_image_file,
        check_input_file,
        check_mediapipe_folder,
        check_options,
        check_output_file,
    )
    from .settings_args import settings_from_args

    check_options(settings_from_args(args), args)
    check_output_file(args.out)
    check_image_file(args.image)
    check_input_file(args.audio, "--audio")
    check_mediapipe_folder(args.mediapipe)
    # --wav2vec is optional (EchoMimic's whisper travels in its checkpoint); whether the
    # checkpoint's family needs it is the full preflight's check (it reads the family).
    if args.wav2vec is not None and not args.wav2vec.is_dir():
        raise CheckpointError(f"wav2vec2 folder {args.wav2vec} does not exist; pass a Hugging "
                              "Face wav2vec2 folder (e.g. facebook/wav2vec2-base-960h)")
    check_checkpoint_header(args.checkpoint)

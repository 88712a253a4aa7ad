"""``generate``'s refusals that need only options, paths and file headers, made before torch,
diffusers or the pipeline are imported (issue 23, class 9: <= 1 s of CPU, <= 150 MB).

Each check is the one :func:`emo_core.pipeline.preflight.preflight_request` makes (same
messages); what needs torch (a WAV's data size, wav2vec2 config bounds, the full EMO header)
is left to that full preflight, which runs right after the imports.
"""

from __future__ import annotations


def quick_generate_checks(args) -> None:
    """Raise :class:`~emo_core.errors.EMOInputError` for what options, paths and headers show."""
    from ..errors import CheckpointError, EMOInputError
    from ..face.mask_expand import check_mask_expand
    from ..io.checkpoint_path import check_checkpoint_header
    from ..pipeline.preflight import (
        check_device,
        check_image_file,
        check_input_file,
        check_mediapipe_folder,
        check_output_file,
    )
    from ..speed import constant_speed, parse_keyframes
    from .settings_args import settings_from_args

    settings_from_args(args).validate()
    check_device(args.device, args.dtype)
    if args.face_index < 0:
        raise EMOInputError(f"--face-index must be >= 0, got {args.face_index}")
    check_mask_expand(args.mask_expand, "--mask-expand")
    if args.speed_keyframes is not None:
        parse_keyframes(args.speed_keyframes)
    elif args.speed is not None:
        constant_speed(args.speed, 1)
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

"""Every image compose pulls and every base image of deploy/Dockerfile is pinned by digest (ADR 0021).

A tag moves; a digest names bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

DIGEST_PINNED = re.compile(r"[a-z0-9][a-z0-9./_-]*:[\w][\w.-]*@sha256:[0-9a-f]{64}")


def floating(image: str) -> str | None:
    """Why `image` may pull different bytes tomorrow, or None if it cannot."""
    if DIGEST_PINNED.fullmatch(image):
        return None
    if ":" not in image.split("/")[-1] or image.endswith(":latest"):
        return f"{image}: no tag or :latest"
    return f"{image}: a tag without a digest"


def _pulled_images() -> dict[str, str]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    # A service with `build:` runs the image built from deploy/Dockerfile, checked below.
    return {name: str(spec["image"]) for name, spec in services.items() if "build" not in spec}


@pytest.mark.parametrize(("image", "verdict"), [
    ("redis", "no tag"),
    ("redis:latest", "no tag"),
    ("library/redis:latest@sha256:" + "0" * 64, None),
    ("redis:7", "without a digest"),
    ("redis:7.4.11", "without a digest"),
    ("redis:7.4.11@sha256:" + "a" * 64, None),
    ("apache/kafka:4.1.1", "without a digest"),
    ("apache/kafka:latest", "no tag"),
])
def test_floating_tells_a_pinned_image_from_a_moving_one(image: str, verdict: str | None) -> None:
    found = floating(image)
    assert (found is None) == (verdict is None), found
    assert verdict is None or verdict in str(found)


def test_compose_pulls_only_pinned_images() -> None:
    images = _pulled_images()
    assert {"kafka", "postgres", "redis", "gateway"} <= set(images)
    problems = [f"{name}: {why}" for name, image in images.items() if (why := floating(image))]
    assert not problems, "deploy/docker-compose.yml:\n" + "\n".join(problems)


def test_dockerfile_base_images_are_pinned() -> None:
    bases = re.findall(r"(?m)^FROM\s+(\S+)", DOCKERFILE.read_text())
    assert bases
    problems = [why for image in bases if (why := floating(image))]
    assert not problems, "deploy/Dockerfile:\n" + "\n".join(problems)

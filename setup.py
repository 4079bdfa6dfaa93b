"""Packages for setuptools: everything under vrstyle/ and tiles/, plus the top-level shaders/
folder shipped inside the wheel as the package ``vrstyle.shaders``."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["vrstyle", "vrstyle.*", "tiles", "tiles.*"]) + ["vrstyle.shaders"],
    package_dir={"vrstyle.shaders": "shaders"},
)

"""io.names: one rule for free text as a file name, an S3 key part or a STAC id."""

from raylib.io.names import SAFE, STAC_ASSET, safe_name


def test_runs_of_other_characters_are_one_separator_and_never_at_the_ends():
    assert safe_name("maps/nc wake") == "maps-nc-wake"
    assert safe_name(" Wake County (NC) ", sep="_", default="zone") == "Wake_County_NC"
    assert safe_name("///", sep="_", default="zone") == "zone"
    assert safe_name("nc-mobilenetv2-logreg.") == "nc-mobilenetv2-logreg"
    assert safe_name("LC08+x y.json", sep="_", allowed=SAFE + "+") == "LC08+x_y.json"
    assert safe_name("Forest_to_Herbaceous.v2", sep="_", allowed=STAC_ASSET) == "Forest_to_Herbaceous_v2"
